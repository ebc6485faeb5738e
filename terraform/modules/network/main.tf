/**
 * The private network of one environment: a VPC without default subnets, a subnet for Cloud Run
 * direct VPC egress (stage services), a /28 for the Serverless VPC Access connector (functions), and
 * private service access so Cloud SQL has a private IP only.
 */

resource "google_compute_network" "vpc" {
  project                 = var.project_id
  name                    = var.name
  auto_create_subnetworks = false
  routing_mode            = "REGIONAL"
}

resource "google_compute_subnetwork" "serverless" {
  project                  = var.project_id
  name                     = "${var.name}-serverless"
  region                   = var.region
  network                  = google_compute_network.vpc.id
  ip_cidr_range            = var.serverless_cidr
  private_ip_google_access = true

  log_config {
    aggregation_interval = "INTERVAL_5_SEC"
    flow_sampling        = var.flow_log_sampling
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_subnetwork" "connector" {
  project                  = var.project_id
  name                     = "${var.name}-connector"
  region                   = var.region
  network                  = google_compute_network.vpc.id
  ip_cidr_range            = var.connector_cidr
  private_ip_google_access = true

  log_config {
    aggregation_interval = "INTERVAL_5_SEC"
    flow_sampling        = var.flow_log_sampling
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

# Private service access: the peering range Cloud SQL takes its private IP from.
resource "google_compute_global_address" "private_services" {
  project       = var.project_id
  name          = "${var.name}-private-services"
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  prefix_length = var.private_services_prefix_length
  network       = google_compute_network.vpc.id
}

resource "google_service_networking_connection" "private_services" {
  network                 = google_compute_network.vpc.id
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.private_services.name]
}

# Cloud Functions (gen2) reach the private IP of Cloud SQL through a connector; Cloud Run services
# use direct VPC egress on the serverless subnet instead.
resource "google_vpc_access_connector" "functions" {
  project       = var.project_id
  name          = var.connector_name
  region        = var.region
  machine_type  = var.connector_machine_type
  min_instances = var.connector_min_instances
  max_instances = var.connector_max_instances

  subnet {
    name = google_compute_subnetwork.connector.name
  }
}

# Only what the VPC needs inside: nothing is exposed. Egress to the private ranges is allowed by the
# implied rule; ingress from the internet is denied by the implied rule.
resource "google_compute_firewall" "deny_ingress" {
  project   = var.project_id
  name      = "${var.name}-deny-all-ingress"
  network   = google_compute_network.vpc.id
  direction = "INGRESS"
  priority  = 65000

  deny {
    protocol = "all"
  }

  source_ranges = ["0.0.0.0/0"]

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

output "network_id" {
  description = "The VPC id."
  value       = google_compute_network.vpc.id
}

output "private_network_id" {
  description = "The VPC id, available only after private service access is connected (for Cloud SQL)."
  value       = google_compute_network.vpc.id
  depends_on  = [google_service_networking_connection.private_services]
}

output "network_name" {
  description = "The VPC name (Cloud Run direct VPC egress)."
  value       = google_compute_network.vpc.name
}

output "serverless_subnet_name" {
  description = "Subnet for Cloud Run direct VPC egress."
  value       = google_compute_subnetwork.serverless.name
}

output "connector_id" {
  description = "Serverless VPC Access connector for the functions."
  value       = google_vpc_access_connector.functions.id
}

output "private_services_connection" {
  description = "The private service access peering; Cloud SQL depends on it."
  value       = google_service_networking_connection.private_services.id
}

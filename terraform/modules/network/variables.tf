variable "project_id" {
  description = "Project that holds the network."
  type        = string
}

variable "region" {
  description = "Region of the subnets and the connector."
  type        = string
}

variable "name" {
  description = "Name of the VPC; subnets and ranges are named after it."
  type        = string
  default     = "heimdex"
}

variable "serverless_cidr" {
  description = "Subnet for Cloud Run direct VPC egress (stage services)."
  type        = string
  default     = "10.10.0.0/24"
}

variable "connector_cidr" {
  description = "A /28 reserved for the Serverless VPC Access connector (functions)."
  type        = string
  default     = "10.10.1.0/28"
}

variable "private_services_prefix_length" {
  description = "Size of the private service access range (Cloud SQL private IP)."
  type        = number
  default     = 20
}

variable "connector_name" {
  description = "Name of the Serverless VPC Access connector (at most 25 characters)."
  type        = string
  default     = "heimdex-fn"
}

variable "connector_machine_type" {
  description = "Machine type of the connector instances."
  type        = string
  default     = "e2-micro"
}

variable "connector_min_instances" {
  description = "Minimum connector instances (at least 2)."
  type        = number
  default     = 2
}

variable "connector_max_instances" {
  description = "Maximum connector instances."
  type        = number
  default     = 3
}

variable "flow_log_sampling" {
  description = "Share of flows recorded in VPC flow logs."
  type        = number
  default     = 0.5
}

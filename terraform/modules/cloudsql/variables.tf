variable "project_id" {
  description = "Project of the instance and the secret."
  type        = string
}

variable "region" {
  description = "Region of the instance."
  type        = string
}

variable "private_network_id" {
  description = "VPC id the private IP is taken in; pass the network module's private_network_id, which is known only once private service access is connected."
  type        = string
}

variable "instance_name" {
  description = "Instance name."
  type        = string
  default     = "heimdex"
}

variable "database_version" {
  description = "PostgreSQL major version (15 or later for pgvector; 18 matches the local default)."
  type        = string
  default     = "POSTGRES_18"
}

variable "tier" {
  description = "Machine tier."
  type        = string
  default     = "db-custom-2-7680"
}

variable "disk_size_gb" {
  description = "Initial disk size (it grows automatically)."
  type        = number
  default     = 20
}

variable "high_availability" {
  description = "REGIONAL (failover replica) instead of ZONAL."
  type        = bool
  default     = false
}

variable "retained_backups" {
  description = "Automated daily backups kept (1-365)."
  type        = number
  default     = 7

  validation {
    condition     = var.retained_backups >= 1 && var.retained_backups <= 365
    error_message = "retained_backups must be between 1 and 365."
  }
}

variable "transaction_log_retention_days" {
  description = "Days of write-ahead logs kept for point-in-time recovery (1-7 on the ENTERPRISE edition)."
  type        = number
  default     = 7

  validation {
    condition     = var.transaction_log_retention_days >= 1 && var.transaction_log_retention_days <= 7
    error_message = "transaction_log_retention_days must be between 1 and 7 (ENTERPRISE edition)."
  }
}

variable "backup_start_time" {
  description = "UTC start (HH:MM) of the daily automated backup window."
  type        = string
  default     = "03:00"
}

variable "deletion_protection" {
  description = "Refuse to delete the instance."
  type        = bool
  default     = true
}

variable "database_flags" {
  description = "Extra database flags (merged over the logging flags), e.g. max_connections."
  type        = map(string)
  default     = {}
}

variable "database_name" {
  description = "Database of the index."
  type        = string
  default     = "heimdex"
}

variable "app_service_accounts" {
  description = "name => email of each service's runtime service account: an IAM database user with the application role (heimdex_app)."
  type        = map(string)
  default     = {}
}

variable "owner_service_account" {
  description = "Email of the maintenance job's service account: the IAM database user that owns the schema (migrations, index maintenance)."
  type        = string
}

variable "labels" {
  description = "Labels."
  type        = map(string)
  default     = {}
}

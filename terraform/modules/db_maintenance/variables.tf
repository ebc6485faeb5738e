variable "project_id" {
  description = "Project of the job."
  type        = string
}

variable "region" {
  description = "Region of the job and its schedule."
  type        = string
}

variable "service_account" {
  description = "Email of the database owner's service account (the job runs as it; no service does)."
  type        = string
}

variable "scheduler_service_account" {
  description = "Email of the account Cloud Scheduler starts the job as."
  type        = string
}

variable "image_repository" {
  description = "Artifact Registry repository of the stage images (the job runs the index image)."
  type        = string
}

variable "image_tag" {
  description = "Tag of the index image."
  type        = string
}

variable "network_name" {
  description = "VPC of the direct egress to Cloud SQL's private IP."
  type        = string
}

variable "subnet_name" {
  description = "Subnet of the direct egress."
  type        = string
}

variable "cloudsql_instance" {
  description = "HEIMDEX_CLOUDSQL_INSTANCE: connection name of the instance."
  type        = string
}

variable "cloudsql_database" {
  description = "HEIMDEX_CLOUDSQL_DATABASE."
  type        = string
}

variable "app_database_users" {
  description = "HEIMDEX_DATABASE_APP_USERS: the services' IAM database users, granted the application role."
  type        = list(string)
}

variable "index_build_mem" {
  description = "HEIMDEX_DB_INDEX_BUILD_MEM: maintenance_work_mem of an HNSW build."
  type        = string
  default     = "1GB"
}

variable "cpu" {
  description = "CPU of the job's task."
  type        = string
  default     = "1"
}

variable "memory" {
  description = "Memory of the job's task."
  type        = string
  default     = "2Gi"
}

variable "timeout_s" {
  description = "Longest run (an organisation's first index build at 1M scenes takes tens of minutes)."
  type        = number
  default     = 3600
}

variable "schedule" {
  description = "Cron schedule of the maintenance run."
  type        = string
  default     = "41 * * * *"
}

variable "deletion_protection" {
  description = "Refuse to delete the job."
  type        = bool
  default     = true
}

variable "labels" {
  description = "Labels."
  type        = map(string)
  default     = {}
}

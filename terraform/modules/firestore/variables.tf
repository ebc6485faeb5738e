variable "project_id" {
  description = "Project of the database."
  type        = string
}

variable "location" {
  description = "Firestore location (a region, or nam5/eur3)."
  type        = string
}

variable "database_name" {
  description = "Database id (HEIMDEX_FIRESTORE_DATABASE)."
  type        = string
  default     = "(default)"
}

variable "ttl_collections" {
  description = "Collections whose documents expire at their TTL field (jobs and events)."
  type        = list(string)
}

variable "ttl_field" {
  description = "Timestamp field of the TTL policy; the code writes `expire_at`."
  type        = string
  default     = "expire_at"
}

variable "point_in_time_recovery" {
  description = "Keep 7 days of point-in-time recovery."
  type        = bool
  default     = true
}

variable "delete_protection" {
  description = "Refuse to delete the database (and abandon it on terraform destroy)."
  type        = bool
  default     = true
}

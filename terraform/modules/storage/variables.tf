variable "project_id" {
  description = "Project of the buckets."
  type        = string
}

variable "location" {
  description = "Bucket location (the region of the functions and services)."
  type        = string
}

variable "create_source_bucket" {
  description = "Create the source bucket for bucket drops (false: Drive and existing buckets only)."
  type        = bool
  default     = true
}

variable "source_bucket_name" {
  description = "Source bucket name; default <project>-heimdex-source."
  type        = string
  default     = null
}

variable "derived_bucket_name" {
  description = "Derived bucket name; default <project>-heimdex-derived."
  type        = string
  default     = null
}

variable "functions_bucket_name" {
  description = "Bucket of the zipped function sources; default <project>-heimdex-functions."
  type        = string
  default     = null
}

variable "force_destroy" {
  description = "Allow destroying non-empty source/derived buckets (dev only)."
  type        = bool
  default     = false
}

variable "soft_delete_seconds" {
  description = "Soft-delete retention of deleted objects (0 disables)."
  type        = number
  default     = 604800
}

variable "derived_noncurrent_days" {
  description = "Days a replaced or deleted derived object is kept as a noncurrent version before it is deleted."
  type        = number
  default     = 3

  validation {
    condition     = var.derived_noncurrent_days >= 1
    error_message = "derived_noncurrent_days must be at least 1 (versions are the derived bucket's backup)."
  }
}

variable "source_nearline_after_days" {
  description = "Move source videos to NEARLINE after this many days (0: never)."
  type        = number
  default     = 0
}

variable "source_readers" {
  description = "name => IAM member granted roles/storage.objectViewer on the source bucket."
  type        = map(string)
  default     = {}
}

variable "upload_creators" {
  description = "name => IAM member that may create objects under <org>/uploads/ of the source bucket (the API that signs upload URLs)."
  type        = map(string)
  default     = {}
}

variable "derived_writers" {
  description = "name => IAM member granted roles/storage.objectUser on the derived bucket."
  type        = map(string)
  default     = {}
}

variable "derived_readers" {
  description = "name => IAM member granted roles/storage.objectViewer on the derived bucket."
  type        = map(string)
  default     = {}
}

variable "functions_readers" {
  description = "name => IAM member granted roles/storage.objectViewer on the function-source bucket."
  type        = map(string)
  default     = {}
}

variable "labels" {
  description = "Labels on every bucket."
  type        = map(string)
  default     = {}
}

variable "audit_data_access" {
  description = "Enable Data Access audit logs (DATA_READ, DATA_WRITE) for Cloud Storage in the project."
  type        = bool
  default     = false
}

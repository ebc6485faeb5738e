variable "environment" {
  description = "Name of the environment (dev, prod); a label on every resource."
  type        = string
}

variable "project_id" {
  description = "Project of the environment (one project per environment: service names are fixed)."
  type        = string
}

variable "region" {
  description = "Region of everything regional; it must offer Cloud Run L4 GPUs (e.g. us-central1, europe-west1, europe-west4)."
  type        = string
}

variable "firestore_location" {
  description = "Firestore location (the region, or a multi-region such as nam5/eur3)."
  type        = string
}

variable "firestore_database" {
  description = "Firestore database id."
  type        = string
  default     = "(default)"
}

variable "jobs_collection" {
  description = "Firestore collection of jobs (TTL on expire_at)."
  type        = string
  default     = "heimdex_jobs"
}

variable "events_collection" {
  description = "Firestore collection of handled storage events (TTL on expire_at)."
  type        = string
  default     = "heimdex_events"
}

variable "watches_collection" {
  description = "Firestore collection of Drive watches."
  type        = string
  default     = "heimdex_drive_watches"
}

variable "drive_grants_collection" {
  description = "Firestore collection of organisations' Drive grants (refresh tokens sealed with the drive_auth key)."
  type        = string
  default     = "heimdex_drive_grants"
}

variable "drive_oauth_client_id" {
  description = "OAuth 2.0 web client through which organisations connect their own Drive (see modules/drive_auth); empty: none yet, only drive_sa_folders."
  type        = string
  default     = ""
}

variable "drive_sa_folders" {
  description = "Drive folder id => organisation: the folders the deployment's own accounts (fn-drive_watch, stage-probe/asr/shots) may watch, each for that one organisation only."
  type        = map(string)
  default     = {}
}

variable "job_ttl_days" {
  description = "Days finished jobs and handled events are kept."
  type        = number
  default     = 30
}

variable "queue_prefix" {
  description = "Cloud Tasks queue name prefix."
  type        = string
  default     = "heimdex-"
}

variable "max_attempts" {
  description = "Attempts of a stage before its job fails for good."
  type        = number
  default     = 2
}

variable "image_tag" {
  description = "Tag of the stage images pushed by `make images`."
  type        = string
}

variable "image_pushers" {
  description = "name => IAM member allowed to push images (CI)."
  type        = map(string)
  default     = {}
}

variable "google_audience" {
  description = "The Identity Platform project whose ID tokens the search API and watch registration accept (their audience; normally project_id)."
  type        = string
}

variable "create_source_bucket" {
  description = "Create the source bucket and the ingest functions."
  type        = bool
  default     = true
}

variable "force_destroy" {
  description = "Allow destroying non-empty buckets."
  type        = bool
  default     = false
}

variable "soft_delete_seconds" {
  description = "Soft-delete retention of bucket objects."
  type        = number
  default     = 604800
}

variable "audit_data_access" {
  description = "Data Access audit logs for Cloud Storage."
  type        = bool
  default     = false
}

variable "deletion_protection" {
  description = "Protect the database, Firestore and the services from deletion."
  type        = bool
  default     = true
}

variable "sql_database_version" {
  description = "Cloud SQL PostgreSQL version (15+)."
  type        = string
  default     = "POSTGRES_18"
}

variable "sql_tier" {
  description = "Cloud SQL machine tier."
  type        = string
  default     = "db-custom-2-7680"
}

variable "sql_high_availability" {
  description = "Regional (HA) Cloud SQL."
  type        = bool
  default     = false
}

variable "sql_retained_backups" {
  description = "Cloud SQL automated daily backups kept."
  type        = number
  default     = 7
}

variable "sql_transaction_log_days" {
  description = "Days of point-in-time recovery (write-ahead logs kept), 1-7."
  type        = number
  default     = 7
}

variable "derived_noncurrent_days" {
  description = "Days replaced or deleted derived objects (sidecars, thumbnails, stage outputs) are kept as noncurrent versions."
  type        = number
  default     = 7
}

variable "sql_database_flags" {
  description = "Extra Cloud SQL flags (e.g. max_connections)."
  type        = map(string)
  default     = {}
}

variable "stage_settings" {
  description = "stage => resource/scaling overrides (see modules/stage_services)."
  type = map(object({
    cpu           = optional(string)
    memory        = optional(string)
    timeout_s     = optional(number)
    concurrency   = optional(number)
    min_instances = optional(number)
    max_instances = optional(number)
  }))
  default = {}
}

variable "queue_settings" {
  description = "stage => queue rate/retry overrides (see modules/task_queues)."
  type = map(object({
    max_dispatches_per_second = optional(number)
    max_concurrent_dispatches = optional(number)
    max_attempts              = optional(number)
    max_retry_duration        = optional(string)
    min_backoff               = optional(string)
    max_backoff               = optional(string)
    max_doublings             = optional(number)
  }))
  default = {}
}

variable "function_settings" {
  description = "function => resource/scaling overrides (see modules/functions)."
  type = map(object({
    memory        = optional(string)
    cpu           = optional(string)
    timeout_s     = optional(number)
    concurrency   = optional(number)
    min_instances = optional(number)
    max_instances = optional(number)
  }))
  default = {}
}

variable "labels" {
  description = "Extra labels on every resource."
  type        = map(string)
  default     = {}
}

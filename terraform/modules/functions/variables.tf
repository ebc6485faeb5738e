variable "project_id" {
  description = "Project of the functions (HEIMDEX_PROJECT)."
  type        = string
}

variable "region" {
  description = "Region of the functions (HEIMDEX_REGION); also the Eventarc trigger region."
  type        = string
}

variable "name_prefix" {
  description = "Prefix of the function and scheduler job names."
  type        = string
  default     = "heimdex-"
}

variable "source_root" {
  description = "The repository's functions/ folder."
  type        = string
}

variable "build_dir" {
  description = "Where the zipped sources are written before upload."
  type        = string
}

variable "runtime" {
  description = "Python runtime of the functions."
  type        = string
  default     = "python311"
}

variable "functions_bucket" {
  description = "Bucket for the zipped sources."
  type        = string
}

variable "source_bucket" {
  description = "Bucket whose object events trigger ingest; null deploys no ingest function."
  type        = string
  default     = null
}

variable "service_accounts" {
  description = "function (folder name) => runtime service account email."
  type        = map(string)
}

variable "build_service_account_id" {
  description = "Fully qualified id of the Cloud Build account (not the default compute account)."
  type        = string
}

variable "eventarc_service_account" {
  description = "Email of the account the Eventarc triggers invoke ingest as."
  type        = string
}

variable "scheduler_service_account" {
  description = "Email of the account Cloud Scheduler signs its OIDC token as."
  type        = string
}

variable "vpc_connector" {
  description = "Serverless VPC Access connector (Cloud SQL private IP)."
  type        = string
}

variable "derived_bucket" {
  description = "HEIMDEX_DERIVED_BUCKET."
  type        = string
}

variable "firestore_database" {
  description = "HEIMDEX_FIRESTORE_DATABASE."
  type        = string
}

variable "jobs_collection" {
  description = "HEIMDEX_JOBS_COLLECTION."
  type        = string
}

variable "events_collection" {
  description = "HEIMDEX_EVENTS_COLLECTION (handled storage events)."
  type        = string
}

variable "watches_collection" {
  description = "HEIMDEX_WATCHES_COLLECTION (Drive watches)."
  type        = string
}

variable "job_ttl_days" {
  description = "HEIMDEX_JOB_TTL_DAYS."
  type        = number
}

variable "queue_prefix" {
  description = "HEIMDEX_TASKS_QUEUE_PREFIX."
  type        = string
}

variable "tasks_invoker_email" {
  description = "HEIMDEX_TASKS_INVOKER_EMAIL."
  type        = string
}

variable "stage_urls" {
  description = "HEIMDEX_STAGE_URLS: stage => URL."
  type        = map(string)
}

variable "stage_timeouts_s" {
  description = "stage => request timeout of its service in seconds (stage_services output timeouts_s); with queue_max_backoff_s, HEIMDEX_STAGE_DEADLINES_S of /sweep."
  type        = map(number)
}

variable "queue_max_backoff_s" {
  description = "stage => longest retry backoff of its queue in seconds (task_queues output max_backoff_s)."
  type        = map(number)
}

variable "google_audience" {
  description = "HEIMDEX_GOOGLE_AUDIENCE: the Identity Platform project, which its ID tokens name as their audience (normally project_id)."
  type        = string
}

variable "db_pool_size" {
  description = "HEIMDEX_DB_POOL_SIZE per function instance."
  type        = number
  default     = 4
}

variable "cloudsql_instance" {
  description = "HEIMDEX_CLOUDSQL_INSTANCE: connection name of the Cloud SQL instance (project:region:instance); the services connect as their own service accounts (IAM database authentication)."
  type        = string
}

variable "cloudsql_database" {
  description = "HEIMDEX_CLOUDSQL_DATABASE."
  type        = string
}

variable "drive_sa_folders" {
  description = "HEIMDEX_DRIVE_SA_FOLDERS: Drive folder id => the one organisation the deployment's own account may watch it for."
  type        = map(string)
  default     = {}
}

variable "drive_oauth_client_id" {
  description = "HEIMDEX_DRIVE_OAUTH_CLIENT_ID of the OAuth web client organisations consent to; empty: none yet (no delegated access)."
  type        = string
  default     = ""
}

variable "drive_grants_collection" {
  description = "HEIMDEX_DRIVE_GRANTS_COLLECTION (organisations' encrypted Drive grants)."
  type        = string
}

variable "drive_token_key_secret_id" {
  description = "Secret holding HEIMDEX_DRIVE_TOKEN_KEY."
  type        = string
}

variable "drive_token_key_secret_version" {
  description = "Version of that secret."
  type        = string
}

variable "drive_oauth_client_secret_id" {
  description = "Secret holding HEIMDEX_DRIVE_OAUTH_CLIENT_SECRET (used once drive_oauth_client_id is set)."
  type        = string
}

variable "drive_oauth_client_secret_version" {
  description = "Version of that secret."
  type        = string
  default     = "latest"
}

variable "media_url_key_secret_id" {
  description = "Secret holding HEIMDEX_MEDIA_URL_KEY (search's signed media URLs)."
  type        = string
}

variable "media_url_key_secret_version" {
  description = "Version of that secret."
  type        = string
}

variable "function_settings" {
  description = "function => overrides of memory, cpu, timeout_s, concurrency, min/max instances."
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

variable "renew_schedule" {
  description = "Cron schedule of the Drive channel renewal."
  type        = string
  default     = "17 */6 * * *"
}

variable "sweep_schedule" {
  description = "Cron schedule of the sweep of stalled jobs (POST /sweep)."
  type        = string
  default     = "*/10 * * * *"
}

variable "labels" {
  description = "Labels."
  type        = map(string)
  default     = {}
}

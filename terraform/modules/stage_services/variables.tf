variable "project_id" {
  description = "Project of the services (HEIMDEX_PROJECT)."
  type        = string
}

variable "region" {
  description = "Region of the services (HEIMDEX_REGION); a region with Cloud Run L4 GPUs."
  type        = string
}

variable "stages" {
  description = "Stage names: one service per folder in containers/."
  type        = list(string)
}

variable "service_accounts" {
  description = "stage => runtime service account email."
  type        = map(string)
}

variable "image_repository" {
  description = "Image prefix, <region>-docker.pkg.dev/<project>/<repository>."
  type        = string
}

variable "image_tag" {
  description = "Tag of every stage image (make images TAG=...)."
  type        = string
}

variable "network_name" {
  description = "VPC for direct VPC egress (Cloud SQL private IP)."
  type        = string
}

variable "subnet_name" {
  description = "Subnet for direct VPC egress."
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
  description = "HEIMDEX_JOBS_COLLECTION (the collection with the TTL policy)."
  type        = string
}

variable "job_ttl_days" {
  description = "HEIMDEX_JOB_TTL_DAYS: finished jobs expire after this many days."
  type        = number
}

variable "queue_prefix" {
  description = "HEIMDEX_TASKS_QUEUE_PREFIX (the queues' name prefix)."
  type        = string
}

variable "tasks_invoker_email" {
  description = "HEIMDEX_TASKS_INVOKER_EMAIL: the only account allowed to invoke the services."
  type        = string
}

variable "max_attempts" {
  description = "HEIMDEX_MAX_ATTEMPTS: attempts of a stage before its job fails."
  type        = number
}

variable "db_pool_size" {
  description = "HEIMDEX_DB_POOL_SIZE: PostgreSQL connections per instance."
  type        = number
  default     = 2
}

variable "cloudsql_instance" {
  description = "HEIMDEX_CLOUDSQL_INSTANCE: connection name of the Cloud SQL instance (project:region:instance); the services connect as their own service accounts (IAM database authentication)."
  type        = string
}

variable "cloudsql_database" {
  description = "HEIMDEX_CLOUDSQL_DATABASE."
  type        = string
}

variable "source_stages" {
  description = "Stages that read the video from its source (and so Drive, with the organisations' grants)."
  type        = list(string)
  default     = ["probe", "asr", "shots", "faces"]
}

variable "drive_sa_folders" {
  description = "HEIMDEX_DRIVE_SA_FOLDERS: Drive folder id => the one organisation the deployment's own accounts may read it for."
  type        = map(string)
  default     = {}
}

variable "drive_oauth_client_id" {
  description = "HEIMDEX_DRIVE_OAUTH_CLIENT_ID (refreshing organisations' grants); empty: none."
  type        = string
  default     = ""
}

variable "drive_grants_collection" {
  description = "HEIMDEX_DRIVE_GRANTS_COLLECTION."
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

variable "stage_settings" {
  description = "stage => overrides of the module's per-stage resources (see main.tf); unset fields keep them."
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

variable "deletion_protection" {
  description = "Refuse to delete the services."
  type        = bool
  default     = true
}

variable "labels" {
  description = "Labels."
  type        = map(string)
  default     = {}
}

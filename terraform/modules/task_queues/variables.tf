variable "project_id" {
  description = "Project of the queues."
  type        = string
}

variable "region" {
  description = "Queue location (HEIMDEX_TASKS_LOCATION, by default the region)."
  type        = string
}

variable "queue_prefix" {
  description = "Queue name prefix (HEIMDEX_TASKS_QUEUE_PREFIX)."
  type        = string
  default     = "heimdex-"
}

variable "pipeline" {
  description = "stage => stages it needs: the graph of heimdex.core.graph.PIPELINE (the root module's local.pipeline; a test keeps them equal)."
  type        = map(list(string))
}

variable "entry_enqueuers" {
  description = "name => IAM member that enqueues the first stage (the ingest and drive_watch functions)."
  type        = map(string)
}

variable "stage_members" {
  description = "stage => IAM member of the stage's service account."
  type        = map(string)
}

variable "invoker_service_account_id" {
  description = "Fully qualified id of the OIDC invoker account (projects/…/serviceAccounts/…)."
  type        = string
}

variable "queue_settings" {
  description = "stage => overrides of the module's rate and retry settings (see main.tf); unset fields keep them."
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

variable "logging_sampling_ratio" {
  description = "Share of task operations logged."
  type        = number
  default     = 1.0
}

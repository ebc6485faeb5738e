variable "project_id" {
  description = "Project of the secrets."
  type        = string
}

variable "token_key_secret_id" {
  description = "Secret holding HEIMDEX_DRIVE_TOKEN_KEY (generated)."
  type        = string
  default     = "heimdex-drive-token-key"
}

variable "oauth_client_secret_id" {
  description = "Secret holding HEIMDEX_DRIVE_OAUTH_CLIENT_SECRET (its version is added by hand)."
  type        = string
  default     = "heimdex-drive-oauth-client-secret"
}

variable "accessors" {
  description = "name => IAM member that may read both secrets (drive_watch, the stages that read sources)."
  type        = map(string)
}

variable "labels" {
  description = "Labels."
  type        = map(string)
  default     = {}
}

variable "project_id" {
  description = "Project of the secret."
  type        = string
}

variable "key_secret_id" {
  description = "Secret holding HEIMDEX_MEDIA_URL_KEY (generated)."
  type        = string
  default     = "heimdex-media-url-key"
}

variable "accessors" {
  description = "name => IAM member that may read the key (the functions that sign or check media URLs: search)."
  type        = map(string)
}

variable "signers" {
  description = "name => {id: fully qualified service account id, member: the same account as \"serviceAccount:<email>\"}: accounts that sign V4 URLs of bucket objects as themselves (IAM signBlob)."
  type = map(object({
    id     = string
    member = string
  }))

  validation {
    condition     = alltrue([for s in values(var.signers) : endswith(s.id, "/serviceAccounts/${trimprefix(s.member, "serviceAccount:")}")])
    error_message = "A signer may only sign as itself: member must be the account named by id."
  }
}

variable "labels" {
  description = "Labels."
  type        = map(string)
  default     = {}
}

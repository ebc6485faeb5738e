variable "project_id" {
  description = "Project of the repository."
  type        = string
}

variable "region" {
  description = "Repository location (the region of the services)."
  type        = string
}

variable "repository_id" {
  description = "Repository id."
  type        = string
  default     = "heimdex"
}

variable "immutable_tags" {
  description = "Refuse to move a tag once pushed."
  type        = bool
  default     = false
}

variable "keep_versions" {
  description = "Most recent versions of each image always kept."
  type        = number
  default     = 10
}

variable "writers" {
  description = "name => IAM member allowed to push (e.g. a CI account)."
  type        = map(string)
  default     = {}
}

variable "labels" {
  description = "Labels."
  type        = map(string)
  default     = {}
}

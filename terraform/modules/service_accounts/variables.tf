variable "project_id" {
  description = "Project of the accounts."
  type        = string
}

variable "prefix" {
  description = "Prefix of every account id."
  type        = string
  default     = "hx"
}

variable "functions" {
  description = "Function names (folders in functions/)."
  type        = list(string)
}

variable "stages" {
  description = "Stage names (folders in containers/)."
  type        = list(string)
}

variable "firestore_database" {
  description = "Firestore database the job-state roles are limited to."
  type        = string
}

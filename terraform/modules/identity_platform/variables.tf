variable "project_id" {
  description = "Project whose Identity Platform the users sign in to (its id is the tokens' audience)."
  type        = string
}

terraform {
  required_version = ">= 1.6"

  # The state location is per environment: envs/<env>/backend.hcl (terraform init -backend-config=...).
  backend "gcs" {}

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.40, < 7.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4, < 3.0"
    }
  }
}

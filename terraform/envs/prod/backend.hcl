# State lives in a GCS bucket made once, by hand, before the first `terraform init` (see
# terraform/README.md). Only this file and terraform.tfvars differ between environments.
terraform {
  backend "gcs" {
    bucket = "heimdex-tfstate-prod"
    prefix = "heimdex/prod"
  }
}

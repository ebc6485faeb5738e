# Where this environment's state lives: a GCS bucket made once, by hand, before the first
# `make plan ENV=prod` (see terraform/README.md). This file and terraform.tfvars are all that differ
# between environments.
bucket = "heimdex-tfstate-prod"
prefix = "heimdex/prod"

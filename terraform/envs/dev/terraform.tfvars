environment        = "dev"
project_id         = "heimdex-dev"
region             = "us-central1"
firestore_location = "us-central1"
image_tag          = "dev"
google_audience    = "heimdex-dev"

# Dev: cheap and disposable.
force_destroy         = true
deletion_protection   = false
sql_tier              = "db-custom-1-3840"
sql_high_availability = false

# Dev: a few days of backups and history.
sql_retained_backups     = 3
sql_transaction_log_days = 1
derived_noncurrent_days  = 3

stage_settings = {
  asr    = { max_instances = 1 }
  vision = { max_instances = 1 }
}

queue_settings = {
  asr    = { max_concurrent_dispatches = 1 }
  vision = { max_concurrent_dispatches = 1 }
}

environment        = "prod"
project_id         = "heimdex-prod"
region             = "us-central1"
firestore_location = "nam5"
image_tag          = "v0.1.0"
google_audience    = "heimdex-prod"

deletion_protection   = true
force_destroy         = false
audit_data_access     = true
sql_tier              = "db-custom-4-15360"
sql_high_availability = true

# Prod: a month of daily backups, a week of point-in-time recovery, a month of derived history.
sql_retained_backups     = 30
sql_transaction_log_days = 7
derived_noncurrent_days  = 30

sql_database_flags = {
  max_connections = "400"
}

stage_settings = {
  probe  = { max_instances = 20 }
  shots  = { max_instances = 20 }
  ocr    = { max_instances = 20 }
  index  = { max_instances = 10 }
  asr    = { max_instances = 5 }
  vision = { max_instances = 5 }
}

queue_settings = {
  asr    = { max_concurrent_dispatches = 5 }
  vision = { max_concurrent_dispatches = 5 }
}

function_settings = {
  search = { min_instances = 1, max_instances = 50 }
}

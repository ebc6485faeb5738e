output "search_url" {
  description = "The search API: GET <search_url>/v1/search?q=... with an Identity Platform ID token."
  value       = module.functions.search_url
}

output "drive_watch_url" {
  description = "Register Drive folders with POST <drive_watch_url>/v1/watches."
  value       = module.functions.drive_watch_url
}

output "drive_oauth_redirect_uri" {
  description = "Authorized redirect URI of the Drive OAuth web client (drive_oauth_client_id)."
  value       = module.functions.drive_oauth_redirect_uri
}

output "source_bucket" {
  description = "Drop videos at gs://<source_bucket>/<org_id>/..."
  value       = module.storage.source_bucket
}

output "derived_bucket" {
  description = "Stage outputs and sidecars."
  value       = module.storage.derived_bucket
}

output "image_repository" {
  description = "Where `make images` pushes."
  value       = module.artifact_registry.repository_url
}

output "stage_urls" {
  description = "HEIMDEX_STAGE_URLS."
  value       = module.stage_services.urls
}

output "service_accounts" {
  description = "Runtime identities (share the folders of drive_sa_folders with fn-drive_watch, stage-probe, stage-asr and stage-shots)."
  value       = module.service_accounts.emails
}

output "db_maintenance_job" {
  description = "The Cloud Run job that migrates the schema and maintains indexes as the owner (`make migrate`)."
  value       = module.db_maintenance.job_name
}

output "db_owner_user" {
  description = "The schema owner's IAM database user (`make migrate` assigns it cloudsqlsuperuser)."
  value       = module.cloudsql.owner_user
}

output "sql_instance" {
  description = "Cloud SQL instance name."
  value       = module.cloudsql.instance_name
}

output "instance_name" {
  description = "Cloud SQL instance name."
  value       = google_sql_database_instance.this.name
}

output "connection_name" {
  description = "project:region:instance."
  value       = google_sql_database_instance.this.connection_name
}

output "private_ip" {
  description = "Private IP of the instance."
  value       = google_sql_database_instance.this.private_ip_address
}

output "database_url_secret_id" {
  description = "Secret id of HEIMDEX_DATABASE_URL (mounted as a secret environment variable)."
  value       = google_secret_manager_secret.database_url.secret_id
}

output "database_url_secret_version" {
  description = "The secret version that holds the current URL."
  value       = google_secret_manager_secret_version.database_url.version
}

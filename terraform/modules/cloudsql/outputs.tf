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

output "database_name" {
  description = "Database of the index (HEIMDEX_CLOUDSQL_DATABASE)."
  value       = google_sql_database.heimdex.name
}

output "app_users" {
  description = "IAM database users of the services (HEIMDEX_DATABASE_APP_USERS of the maintenance job)."
  value       = sort([for u in google_sql_user.app : u.name])
}

output "owner_user" {
  description = "IAM database user of the schema owner (the maintenance job)."
  value       = google_sql_user.owner.name
}

output "database_name" {
  description = "Database id (HEIMDEX_FIRESTORE_DATABASE)."
  value       = google_firestore_database.this.name
}

output "ttl_fields" {
  description = "collection => TTL field resource id."
  value       = { for k, f in google_firestore_field.ttl : k => f.id }
}

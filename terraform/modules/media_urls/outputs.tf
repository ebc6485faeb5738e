output "key_secret_id" {
  description = "Secret id of HEIMDEX_MEDIA_URL_KEY."
  value       = google_secret_manager_secret.key.secret_id
}

output "key_secret_version" {
  description = "Version of that secret."
  value       = google_secret_manager_secret_version.key.version
}

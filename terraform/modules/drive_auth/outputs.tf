output "token_key_secret_id" {
  description = "Secret id of HEIMDEX_DRIVE_TOKEN_KEY."
  value       = google_secret_manager_secret.token_key.secret_id
}

output "token_key_secret_version" {
  description = "Version of that secret."
  value       = google_secret_manager_secret_version.token_key.version
}

output "oauth_client_secret_id" {
  description = "Secret id of HEIMDEX_DRIVE_OAUTH_CLIENT_SECRET (add its version by hand)."
  value       = google_secret_manager_secret.oauth_client_secret.secret_id
}

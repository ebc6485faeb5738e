output "project" {
  description = "The tokens' audience (HEIMDEX_GOOGLE_AUDIENCE)."
  value       = google_identity_platform_config.this.project
}

output "issuer" {
  description = "The tokens' issuer."
  value       = "https://securetoken.google.com/${google_identity_platform_config.this.project}"
}

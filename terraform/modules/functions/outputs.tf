output "search_url" {
  description = "The public search API (GET <url>/v1/search?q=...)."
  value       = google_cloudfunctions2_function.this["search"].service_config[0].uri
}

output "drive_watch_url" {
  description = "drive_watch endpoint; Drive pushes to <url>/notifications."
  value       = local.drive_watch_url
}

output "function_names" {
  description = "deployment => function name."
  value       = { for k, f in google_cloudfunctions2_function.this : k => f.name }
}

output "drive_oauth_redirect_uri" {
  description = "The authorized redirect URI of the Drive OAuth web client."
  value       = "${local.drive_watch_url}/v1/drive/callback"
}

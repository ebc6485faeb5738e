output "source_bucket" {
  description = "Name of the source bucket, or null when not created."
  value       = var.create_source_bucket ? google_storage_bucket.source[0].name : null
}

output "derived_bucket" {
  description = "Name of the derived bucket (HEIMDEX_DERIVED_BUCKET)."
  value       = google_storage_bucket.derived.name
}

output "functions_bucket" {
  description = "Name of the bucket that holds the zipped function sources."
  value       = google_storage_bucket.functions.name
}

output "job_name" {
  description = "The Cloud Run job (`gcloud run jobs execute <job_name> --wait`; `make migrate`)."
  value       = google_cloud_run_v2_job.maintenance.name
}

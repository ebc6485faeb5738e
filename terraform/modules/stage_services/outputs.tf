output "urls" {
  description = "stage => deterministic URL (the value of HEIMDEX_STAGE_URLS and the OIDC audience)."
  value       = local.urls
}

output "service_uris" {
  description = "stage => URI reported by Cloud Run (the legacy hash URL also serves)."
  value       = { for s, svc in google_cloud_run_v2_service.stage : s => svc.uri }
}

output "service_names" {
  description = "stage => service name."
  value       = local.service_names
}

output "timeouts_s" {
  description = "stage => request timeout in seconds (how long one attempt may run)."
  value       = { for s in var.stages : s => local.settings[s].timeout_s }
}

output "services" {
  description = "The enabled APIs (depend on this before creating resources)."
  value       = [for s in google_project_service.this : s.service]
}

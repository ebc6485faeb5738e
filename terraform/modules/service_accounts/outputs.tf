output "emails" {
  description = "key => email; keys: fn-<function>, stage-<stage>, tasks-invoker, scheduler, eventarc, fn-build, db-owner."
  value       = { for k, sa in google_service_account.this : k => sa.email }
}

output "members" {
  description = "Same keys => \"serviceAccount:<email>\", known at plan time (built from the account ids)."
  value       = { for k, e in local.emails : k => "serviceAccount:${e}" }
}

output "ids" {
  description = "key => fully qualified account id (for google_service_account_iam_member)."
  value       = { for k, sa in google_service_account.this : k => sa.name }
}

output "function_emails" {
  description = "function => runtime service account email."
  value       = { for f in var.functions : f => google_service_account.this["fn-${f}"].email }
}

output "stage_emails" {
  description = "stage => runtime service account email."
  value       = { for s in var.stages : s => google_service_account.this["stage-${s}"].email }
}

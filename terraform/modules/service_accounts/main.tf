/**
 * One service account per function and per stage service, plus the identities the platform acts
 * as: the Cloud Tasks OIDC invoker, the Cloud Scheduler caller, the Eventarc trigger, the Cloud
 * Build account of the functions (so nothing runs as the default compute service account), and the
 * database owner (the maintenance job: migrations and index maintenance; no service runs as it).
 *
 * Only the roles that exist at project level are granted here, and Firestore's is restricted to the
 * one database by an IAM condition. Everything else is granted on the resource, by the module that
 * owns it: bucket roles (storage), Cloud SQL connect/login on the instance (cloudsql), enqueue rights per queue
 * and actAs on the invoker (task_queues), run.invoker per service (stage_services, functions).
 */

locals {
  accounts = merge(
    { for f in var.functions : "fn-${f}" => "Heimdex function ${f}" },
    { for s in var.stages : "stage-${s}" => "Heimdex stage ${s}" },
    {
      "tasks-invoker" = "Heimdex Cloud Tasks OIDC invoker of the stage services"
      "scheduler"     = "Heimdex Cloud Scheduler caller of drive_watch /renew and /sweep"
      "eventarc"      = "Heimdex Eventarc trigger of the ingest function"
      "fn-build"      = "Heimdex Cloud Build account for the functions"
      "db-owner"      = "Heimdex database owner: migrations and index maintenance (Cloud Run job)"
    },
  )
  # Account ids: 6-30 characters, lowercase, digits and hyphens.
  ids    = { for k, _ in local.accounts : k => substr(replace("${var.prefix}-${k}", "_", "-"), 0, 30) }
  emails = { for k, id in local.ids : k => "${id}@${var.project_id}.iam.gserviceaccount.com" }

  firestore_writers = concat([for f in var.functions : "fn-${f}" if f != "search"], [for s in var.stages : "stage-${s}"])
  firestore_readers = [for f in var.functions : "fn-${f}" if f == "search"]
  firestore_condition = {
    title      = "heimdex-firestore-database"
    expression = "resource.name == \"projects/${var.project_id}/databases/${var.firestore_database}\""
  }
}

resource "google_service_account" "this" {
  for_each = local.accounts

  project      = var.project_id
  account_id   = local.ids[each.key]
  display_name = each.value
}

resource "google_project_iam_member" "firestore_user" {
  for_each = toset(local.firestore_writers)

  project = var.project_id
  role    = "roles/datastore.user"
  member  = "serviceAccount:${google_service_account.this[each.key].email}"

  condition {
    title      = local.firestore_condition.title
    expression = local.firestore_condition.expression
  }
}

resource "google_project_iam_member" "firestore_viewer" {
  for_each = toset(local.firestore_readers)

  project = var.project_id
  role    = "roles/datastore.viewer"
  member  = "serviceAccount:${google_service_account.this[each.key].email}"

  condition {
    title      = local.firestore_condition.title
    expression = local.firestore_condition.expression
  }
}

resource "google_project_iam_member" "eventarc_receiver" {
  project = var.project_id
  role    = "roles/eventarc.eventReceiver"
  member  = "serviceAccount:${google_service_account.this["eventarc"].email}"
}

resource "google_project_iam_member" "build" {
  for_each = toset(["roles/logging.logWriter", "roles/artifactregistry.writer"])

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.this["fn-build"].email}"
}

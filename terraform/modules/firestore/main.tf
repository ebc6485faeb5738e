/**
 * The Firestore (native mode) database that holds job state, handled storage events and Drive
 * watches. Finished jobs and remembered events carry `expire_at`; a TTL policy on that field deletes
 * them (documents whose `expire_at` is null, i.e. running jobs, never expire).
 */

resource "google_firestore_database" "this" {
  project                           = var.project_id
  name                              = var.database_name
  location_id                       = var.location
  type                              = "FIRESTORE_NATIVE"
  concurrency_mode                  = "OPTIMISTIC"
  point_in_time_recovery_enablement = var.point_in_time_recovery ? "POINT_IN_TIME_RECOVERY_ENABLED" : "POINT_IN_TIME_RECOVERY_DISABLED"
  delete_protection_state           = var.delete_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  deletion_policy                   = var.delete_protection ? "ABANDON" : "DELETE"
}

resource "google_firestore_field" "ttl" {
  for_each = toset(var.ttl_collections)

  project    = var.project_id
  database   = google_firestore_database.this.name
  collection = each.value
  field      = var.ttl_field

  ttl_config {}

  # A TTL field needs no single-field index; leaving it out saves index writes on every update.
  index_config {}
}

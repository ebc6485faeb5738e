/**
 * Buckets of one environment, none of them public: uniform bucket-level access, public access
 * prevention enforced, soft delete, lifecycle rules.
 *
 * - source (optional): organisations drop videos under `<org_id>/...`; ingest is triggered by its
 *   object finalize/delete events. Not versioned: on a versioned bucket a delete only archives the
 *   live generation and no `deleted` event fires until the noncurrent copy is purged, so a deleted
 *   video would stay searchable. Soft delete protects against mistakes instead.
 * - derived: stage outputs, thumbnails and sidecars (`derived/<org>/<asset>/...`). Versioned with a
 *   short noncurrent life: a bad deploy that overwrites sidecars can be rolled back.
 * - functions: the zipped function sources that Cloud Build reads. Versioned.
 */

locals {
  source_name    = coalesce(var.source_bucket_name, "${var.project_id}-heimdex-source")
  derived_name   = coalesce(var.derived_bucket_name, "${var.project_id}-heimdex-derived")
  functions_name = coalesce(var.functions_bucket_name, "${var.project_id}-heimdex-functions")
}

resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_78:Versioning would turn deletes into archive events, so deleted videos would stay in the index; soft delete protects the originals instead.
  #checkov:skip=CKV_GCP_62:Legacy usage-log buckets are not used; access is recorded by Cloud Audit Logs (Data Access logs for storage when audit_data_access is true).
  count = var.create_source_bucket ? 1 : 0

  project                     = var.project_id
  name                        = local.source_name
  location                    = var.location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy
  labels                      = var.labels

  soft_delete_policy {
    retention_duration_seconds = var.soft_delete_seconds
  }

  lifecycle_rule {
    condition {
      age = 7
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }

  dynamic "lifecycle_rule" {
    for_each = var.source_nearline_after_days > 0 ? [var.source_nearline_after_days] : []
    content {
      condition {
        age                   = lifecycle_rule.value
        matches_storage_class = ["STANDARD"]
      }
      action {
        type          = "SetStorageClass"
        storage_class = "NEARLINE"
      }
    }
  }
}

resource "google_storage_bucket" "derived" {
  #checkov:skip=CKV_GCP_62:Legacy usage-log buckets are not used; access is recorded by Cloud Audit Logs (Data Access logs for storage when audit_data_access is true).
  project                     = var.project_id
  name                        = local.derived_name
  location                    = var.location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy
  labels                      = var.labels

  versioning {
    enabled = true
  }

  soft_delete_policy {
    retention_duration_seconds = var.soft_delete_seconds
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.derived_noncurrent_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      age = 7
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }
}

resource "google_storage_bucket" "functions" {
  #checkov:skip=CKV_GCP_62:Legacy usage-log buckets are not used; access is recorded by Cloud Audit Logs (Data Access logs for storage when audit_data_access is true).
  project                     = var.project_id
  name                        = local.functions_name
  location                    = var.location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true # only build inputs, named by content hash
  labels                      = var.labels

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 7
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      age = 90
    }
    action {
      type = "Delete"
    }
  }
}

# Bucket-level grants only (no project-wide storage roles). Keys are static names so that plans
# work before the service accounts exist.
resource "google_storage_bucket_iam_member" "source_readers" {
  for_each = var.create_source_bucket ? var.source_readers : {}

  bucket = google_storage_bucket.source[0].name
  role   = "roles/storage.objectViewer"
  member = each.value
}

# The API signs uploads into the source bucket (V4 PUT or resumable POST as itself): a signed URL can
# do only what its signer may, so the signer may create objects, and only under <org>/uploads/.
resource "google_storage_bucket_iam_member" "upload_creators" {
  for_each = var.create_source_bucket ? var.upload_creators : {}

  bucket = google_storage_bucket.source[0].name
  role   = "roles/storage.objectCreator"
  member = each.value

  condition {
    title       = "heimdex-uploads-only"
    description = "Objects under <org>/uploads/ only."
    expression  = "resource.name.extract(\"projects/_/buckets/${google_storage_bucket.source[0].name}/objects/{org}/uploads/\") != \"\""
  }
}

resource "google_storage_bucket_iam_member" "derived_writers" {
  for_each = var.derived_writers

  bucket = google_storage_bucket.derived.name
  role   = "roles/storage.objectUser"
  member = each.value
}

resource "google_storage_bucket_iam_member" "derived_readers" {
  for_each = var.derived_readers

  bucket = google_storage_bucket.derived.name
  role   = "roles/storage.objectViewer"
  member = each.value
}

resource "google_storage_bucket_iam_member" "functions_readers" {
  for_each = var.functions_readers

  bucket = google_storage_bucket.functions.name
  role   = "roles/storage.objectViewer"
  member = each.value
}

# Data Access audit logs for Cloud Storage (object reads and writes), instead of legacy usage logs.
# Stages read videos in many ranged requests, so this is opt-in (prod enables it).
resource "google_project_iam_audit_config" "storage" {
  count = var.audit_data_access ? 1 : 0

  project = var.project_id
  service = "storage.googleapis.com"

  audit_log_config {
    log_type = "DATA_READ"
  }

  audit_log_config {
    log_type = "DATA_WRITE"
  }
}

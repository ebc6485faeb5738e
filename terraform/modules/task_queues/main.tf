/**
 * One Cloud Tasks queue per stage, named `<queue_prefix><stage>` (HEIMDEX_TASKS_QUEUE_PREFIX), with
 * retry and rate limits per stage. Enqueue rights follow the pipeline graph: the queue of a stage is
 * writable only by the accounts that unlock it (the entry points for the first stage, the stages it
 * needs for the others). Those accounts may also act as the invoker account, whose OIDC token the
 * tasks carry.
 */

locals {
  # Rate and retry per queue. The application answers 2xx once a job has failed for good (after
  # HEIMDEX_MAX_ATTEMPTS), so queue retries beyond that only cover infrastructure failures. GPU queues
  # dispatch no more tasks at once than their services have instances.
  default_queue = {
    max_dispatches_per_second = 5
    max_concurrent_dispatches = 20
    max_attempts              = 5
    max_retry_duration        = "86400s"
    min_backoff               = "10s"
    max_backoff               = "600s"
    max_doublings             = 4
  }
  base_queue = {
    asr    = merge(local.default_queue, { max_dispatches_per_second = 1, max_concurrent_dispatches = 3 })
    vision = merge(local.default_queue, { max_dispatches_per_second = 1, max_concurrent_dispatches = 3 })
  }
  queue_settings = {
    for s, _ in var.pipeline : s => merge(
      lookup(local.base_queue, s, local.default_queue),
      { for k, v in try(var.queue_settings[s], {}) : k => v if v != null },
    )
  }

  # queue stage => { name => member } of the accounts allowed to enqueue it.
  enqueuers = {
    for s, needs in var.pipeline : s => (
      length(needs) == 0 ? tomap(var.entry_enqueuers) : tomap({ for n in needs : "stage-${n}" => var.stage_members[n] })
    )
  }
  enqueue_grants = merge([
    for s, members in local.enqueuers : { for name, member in members : "${s}/${name}" => { stage = s, member = member } }
  ]...)
  act_as = merge(values(local.enqueuers)...)
}

resource "google_cloud_tasks_queue" "stage" {
  for_each = var.pipeline

  project  = var.project_id
  name     = "${var.queue_prefix}${each.key}"
  location = var.region

  rate_limits {
    max_dispatches_per_second = local.queue_settings[each.key].max_dispatches_per_second
    max_concurrent_dispatches = local.queue_settings[each.key].max_concurrent_dispatches
  }

  retry_config {
    max_attempts       = local.queue_settings[each.key].max_attempts
    max_retry_duration = local.queue_settings[each.key].max_retry_duration
    min_backoff        = local.queue_settings[each.key].min_backoff
    max_backoff        = local.queue_settings[each.key].max_backoff
    max_doublings      = local.queue_settings[each.key].max_doublings
  }

  stackdriver_logging_config {
    sampling_ratio = var.logging_sampling_ratio
  }
}

resource "google_cloud_tasks_queue_iam_member" "enqueuer" {
  for_each = local.enqueue_grants

  project  = var.project_id
  location = var.region
  name     = google_cloud_tasks_queue.stage[each.value.stage].name
  role     = "roles/cloudtasks.enqueuer"
  member   = each.value.member
}

# Creating a task that carries an OIDC token for the invoker needs iam.serviceAccounts.actAs on it.
resource "google_service_account_iam_member" "act_as_invoker" {
  for_each = local.act_as

  service_account_id = var.invoker_service_account_id
  role               = "roles/iam.serviceAccountUser"
  member             = each.value
}

output "queue_names" {
  description = "stage => queue name."
  value       = { for s, q in google_cloud_tasks_queue.stage : s => q.name }
}

output "queue_ids" {
  description = "stage => queue id."
  value       = { for s, q in google_cloud_tasks_queue.stage : s => q.id }
}

output "stages" {
  description = "The stages of the pipeline, in the graph's key order."
  value       = keys(var.pipeline)
}

output "max_backoff_s" {
  description = "stage => the queue's longest retry backoff in seconds (a task may wait this long between attempts)."
  value       = { for s, q in local.queue_settings : s => tonumber(trimsuffix(q.max_backoff, "s")) }
}

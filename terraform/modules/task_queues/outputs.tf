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

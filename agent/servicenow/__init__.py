"""Where incidents are sent: the ServiceNow Table API client, incident decisions, the outbox."""

-- When a message was first received, for messages with points without a time
-- of their own (issue 12 item 4). Such a point takes its message's receive
-- time; a copy of the message received later (an MQTT QoS 1 retransmission, a
-- device's replay) would otherwise be stored again under its own, later
-- receive time. The writer records the first receipt here and gives every
-- copy that time, so (message id, point index) identifies the point. Rows
-- older than seven days are pruned by the writers.
CREATE TABLE message_receipts (
  tenant_id   text        NOT NULL,
  device_id   text        NOT NULL,
  message_id  text        NOT NULL,
  received_at timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, device_id, message_id)
);
CREATE INDEX message_receipts_received_at ON message_receipts (received_at);

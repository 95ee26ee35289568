-- Alert rules select devices by device group too (issue 16/17: "this rule
-- applies to group X"). Group ids are the device service's; membership is
-- resolved when the rule is evaluated, from the group directory (IOT_GROUPS).
ALTER TABLE alert_rules ADD COLUMN group_ids text[] NOT NULL DEFAULT '{}';

-- Per-minute, per-hour and per-day aggregates of every numeric (or boolean,
-- as 0/1) series, maintained by the store in the same transaction as the raw
-- points, from the rows that transaction actually inserted (a redelivered
-- point adds nothing). Every aggregate merges exactly: count and sum add,
-- min and max compare, and `last` is the value of the point with the greatest
-- (time, message id, point index), the same order the raw query uses, which
-- is why that key is kept beside it. History answers from the coarsest width
-- dividing its buckets and reads raw points only at the edges.
CREATE TABLE rollups (
  tenant_id        text             NOT NULL,
  device_id        text             NOT NULL,
  metric           text             NOT NULL,
  -- Bucket width in seconds: 60, 3600 or 86400; buckets start at whole multiples since the epoch.
  width_s          integer          NOT NULL,
  bucket           timestamptz      NOT NULL,
  count            bigint           NOT NULL,
  sum              double precision NOT NULL,
  min              double precision NOT NULL,
  max              double precision NOT NULL,
  last             double precision NOT NULL,
  last_time        timestamptz      NOT NULL,
  last_message_id  text             NOT NULL,
  last_point_index integer          NOT NULL,
  PRIMARY KEY (tenant_id, device_id, metric, width_s, bucket)
);
-- Rollup retention deletes by age.
CREATE INDEX rollups_bucket ON rollups (bucket);

-- Points stored before this migration get their rollups once.
INSERT INTO rollups
SELECT tenant_id, device_id, metric, w.width_s,
       to_timestamp(floor(extract(epoch FROM time) / w.width_s) * w.width_s) AS bucket,
       count(*), sum(v), min(v), max(v),
       (array_agg(v ORDER BY time DESC, message_id DESC, point_index DESC))[1],
       (array_agg(time ORDER BY time DESC, message_id DESC, point_index DESC))[1],
       (array_agg(message_id ORDER BY time DESC, message_id DESC, point_index DESC))[1],
       (array_agg(point_index ORDER BY time DESC, message_id DESC, point_index DESC))[1]
  FROM (SELECT tenant_id, device_id, metric, time, message_id, point_index,
               coalesce(number_value, bool_value::int::float8) AS v
          FROM points) p
 CROSS JOIN (VALUES (60), (3600), (86400)) AS w (width_s)
 WHERE v IS NOT NULL
 GROUP BY tenant_id, device_id, metric, w.width_s, bucket;

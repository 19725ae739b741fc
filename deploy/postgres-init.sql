-- One database per service (CONTRACT.md: each service owns its database).
-- The postgres image runs this once, when its data volume is still empty.
CREATE DATABASE orders;
CREATE DATABASE inventory;
CREATE DATABASE coupons;
CREATE DATABASE notifications;

-- A database per service: what the examples are about.
CREATE DATABASE mailroom_demo_users;
CREATE DATABASE mailroom_demo_orders;
CREATE DATABASE mailroom_demo_shop_orders;
CREATE DATABASE mailroom_demo_inventory;
CREATE DATABASE mailroom_demo_payments;

-- Generated orders, counted per customer: the datagen connector makes 1000 orders (a
-- sequence of ids, random customers 1 to 5 and amounts between 1 and 500), and a
-- GROUP BY prints each customer's count and total as they change.
--
--     sluice run examples/sql/datagen-orders.sql
CREATE TABLE orders (
    order_id BIGINT,
    customer INT,
    amount DOUBLE
) WITH (
    'connector' = 'datagen',
    'rows-per-second' = '1000',
    'fields.order_id.kind' = 'sequence',
    'fields.order_id.start' = '1',
    'fields.order_id.end' = '1000',
    'fields.customer.min' = '1',
    'fields.customer.max' = '5',
    'fields.amount.min' = '1',
    'fields.amount.max' = '500'
);

CREATE TABLE totals (
    customer INT,
    orders BIGINT,
    total DOUBLE
) WITH ('connector' = 'print');

INSERT INTO totals
SELECT customer, COUNT(*) AS orders, ROUND(SUM(amount), 2) AS total
FROM orders
GROUP BY customer;

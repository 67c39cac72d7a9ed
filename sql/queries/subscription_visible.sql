-- Whether the calling role sees subscription $1 in webhook.subscriptions (the API answers a
-- caller who does not as it would for a subscription that does not exist).
SELECT EXISTS (SELECT FROM webhook.subscriptions s WHERE s.id OPERATOR(pg_catalog.=) $1)

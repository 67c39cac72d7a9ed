-- Why subscription $1's owner may not read its whole table now (NULL: it may).
SELECT o.denied FROM webhook._owner_access o WHERE o.id = $1

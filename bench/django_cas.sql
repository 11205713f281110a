-- django-concurrency's optimistic save, one pgbench transaction per save (autocommit, as Django
-- runs by default): read the version, then update only if it is still that version.
-- bench/compare.sh passes -D keys=N -D data=<~100-byte JSON text>.
\set id random(1, :keys)
SELECT version FROM records WHERE id = :id \gset
UPDATE records SET data = :data, version = :version + 1 WHERE id = :id AND version = :version;

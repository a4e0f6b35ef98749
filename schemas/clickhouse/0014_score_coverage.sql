-- What each recorded score covers of its framework's catalog
-- (policies/frameworks/): its requirements, those without evidence in the
-- scope, and the share with evidence (0-100). NULL: no catalog.
ALTER TABLE scores ADD COLUMN catalog_requirements Nullable(UInt32), ADD COLUMN not_assessed Nullable(UInt32), ADD COLUMN coverage Nullable(Float64);

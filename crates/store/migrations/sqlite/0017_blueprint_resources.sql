-- What each blueprint manages in each workspace (docs/blueprints.md): the version last applied
-- there, and a row per resource it made, found by the key the blueprint gives it. Overrides are
-- the fields (paths) the workspace owns instead of the blueprint. A resource is managed by one
-- blueprint at most. Deleting a blueprint leaves its resources in place, no longer managed.
CREATE TABLE blueprint_applications (
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    blueprint_id TEXT NOT NULL REFERENCES blueprints(id) ON DELETE CASCADE,
    version      INTEGER NOT NULL,
    applied_at   INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, blueprint_id)
);
CREATE INDEX blueprint_applications_by_blueprint ON blueprint_applications (blueprint_id);
CREATE TABLE blueprint_resources (
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    blueprint_id TEXT NOT NULL REFERENCES blueprints(id) ON DELETE CASCADE,
    kind         TEXT NOT NULL,
    key          TEXT NOT NULL,
    resource_id  TEXT NOT NULL,
    overrides    TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (workspace_id, blueprint_id, kind, key)
);
CREATE UNIQUE INDEX blueprint_resources_by_resource ON blueprint_resources (workspace_id, kind, resource_id);

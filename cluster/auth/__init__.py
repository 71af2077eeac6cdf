"""Who is calling and what they may do: bearer-token authentication and RBAC authorization.

`authn` turns request headers into a `UserInfo`; `requestinfo` turns an HTTP request into RBAC
`Attributes`; `rbac` decides from Roles, ClusterRoles and their bindings; `policy` holds the
default roles and bindings a new cluster starts with.
"""

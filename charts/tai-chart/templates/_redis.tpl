{{/*
Helpers of the Redis part of the chart: ACL rules, Vault agent annotations, TLS arguments.
Passwords never pass through the chart: the Vault agent renders each one to
<secretsPath>/redis-user-<user> inside the pods that need it.
*/}}

{{/*
The ACL file without passwords (ConfigMap redis-acl): `user default off ...`, then one
`user NAME RULES` line per user; redis-start.sh adds `on #<sha256 of the password>` to each.
Refuses a service without a Redis user of its name.
*/}}
{{- define "tai.redisAclRules" -}}
{{- $users := .Values.redis.auth.users -}}
{{- range $svc := keys .Values.services | sortAlpha }}
{{- if not (hasKey $users $svc) }}
{{- fail (printf "redis.auth.users: service %s has no Redis user of its name (add redis.auth.users.%s)" $svc $svc) }}
{{- end }}
{{- end -}}
# Redis ACL users of the TAI chart. No passwords here: redis-start.sh adds "on #<sha256>" to each
# user from the password the Vault agent renders ({{ .Values.redis.auth.vaultPath }}/<user>).
user default off resetpass resetkeys resetchannels -@all
{{- range $name, $u := $users }}
user {{ $name }} resetkeys {{ range $k := $u.keys }}~{{ $k }} {{ end }}{{ join " " $u.rules }}
{{- end }}
{{ end -}}

{{/* The Vault agent template of one password file. Call with (dict "path" p). */}}
{{- define "tai.redisPasswordTemplate" -}}
{{ printf "{{- with secret %q -}}{{ .Data.data.password }}{{- end -}}" .path }}
{{- end -}}

{{/*
Vault agent annotations of a Redis pod (init container only: the files are read at start).
Call with (dict "root" $ "role" vaultRole "users" (list ...)); each user's password goes to
redis-user-<user>.
*/}}
{{- define "tai.redisVaultAnnotations" -}}
{{- $v := .root.Values.vault -}}
{{- $a := .root.Values.redis.auth -}}
vault.hashicorp.com/agent-inject: "true"
vault.hashicorp.com/agent-pre-populate-only: "true"
vault.hashicorp.com/role: {{ .role | quote }}
vault.hashicorp.com/service: {{ $v.address | quote }}
vault.hashicorp.com/agent-service-account-token-volume-name: vault-token
{{- if $v.caSecret }}
vault.hashicorp.com/tls-secret: {{ $v.caSecret | quote }}
vault.hashicorp.com/ca-cert: /vault/tls/ca.crt
{{- end }}
{{- range $user := .users }}
vault.hashicorp.com/agent-inject-secret-redis-user-{{ $user }}: {{ printf "%s/%s" $a.vaultPath $user | quote }}
vault.hashicorp.com/agent-inject-template-redis-user-{{ $user }}: {{ include "tai.redisPasswordTemplate" (dict "path" (printf "%s/%s" $a.vaultPath $user)) | quote }}
{{- end }}
{{- end -}}

{{/* The projected, audience-bound token the Vault agent logs in with (no token elsewhere). */}}
{{- define "tai.redisVaultTokenVolume" -}}
- name: vault-token
  projected:
    sources:
      - serviceAccountToken:
          path: token
          audience: {{ .Values.redis.auth.vaultAudience | quote }}
          expirationSeconds: 3600
{{- end -}}

{{/* The certificate Secret's volume: the CA alone (clients) or the node certificate too. */}}
{{- define "tai.redisCaVolume" -}}
- name: redis-ca
  secret:
    secretName: redis-tls
    items:
      - {key: ca.crt, path: ca.crt}
{{- end -}}

{{/* Environment of a client of the chart's scripts: TLS and an ACL user. Call with (dict "root" $ "user" name). */}}
{{- define "tai.redisClientEnv" -}}
- {name: REDIS_TLS_CA_FILE, value: {{ printf "%s/ca.crt" .root.Values.redis.tls.mountPath | quote }}}
- {name: REDIS_USER, value: {{ .user | quote }}}
- {name: REDIS_PASSWORD_FILE, value: {{ printf "%s/redis-user-%s" .root.Values.redis.auth.secretsPath .user | quote }}}
{{- end -}}

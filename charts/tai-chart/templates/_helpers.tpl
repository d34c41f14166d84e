{{/*
Helpers of the TAI chart. Every object carries metadata.namespace (the release namespace,
except the Istio Gateway, which lives with the ingress gateway in istio-system).
*/}}

{{/* Chart label value: name-version. */}}
{{- define "tai.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "tai.labels" -}}
app.kubernetes.io/part-of: tai
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
helm.sh/chart: {{ include "tai.chart" . | quote }}
tai.example.com/region: {{ .Values.region | default "unset" | quote }}
tai.example.com/environment: {{ .Values.environment | quote }}
{{- range $k, $v := .Values.commonLabels }}
{{ $k }}: {{ $v | toString | quote }}
{{- end }}
{{- end -}}

{{/*
Slots of a service that are deployed (those with a tag), in a fixed order.
Call with (dict "svc" $svc); returns a comma-separated list ("blue", "blue,green", ...).
*/}}
{{- define "tai.deployedSlots" -}}
{{- $out := list -}}
{{- range $slot := list "blue" "green" -}}
{{- $s := index ($.svc.slots | default dict) $slot | default dict -}}
{{- if $s.tag -}}{{- $out = append $out $slot -}}{{- end -}}
{{- end -}}
{{- join "," $out -}}
{{- end -}}

{{/* The slot that is not active. Call with the active slot name. */}}
{{- define "tai.otherSlot" -}}
{{- if eq . "blue" }}green{{ else }}blue{{ end -}}
{{- end -}}

{{/*
An image reference from a repository and a pinned tag; refuses "latest" and empty tags even
when schema validation is skipped. Call with (dict "repository" r "tag" t "digest" d "what" description);
the digest (sha256:...) is optional.
*/}}
{{- define "tai.image" -}}
{{- if not .tag -}}
{{- fail (printf "%s: the image tag is missing; pin an exact tag such as v1.0.0" .what) -}}
{{- end -}}
{{- if eq (toString .tag) "latest" -}}
{{- fail (printf "%s: the image tag 'latest' is refused; pin an exact tag such as v1.0.0" .what) -}}
{{- end -}}
{{- if .digest -}}
{{- printf "%s:%s@%s" .repository (toString .tag) .digest -}}
{{- else -}}
{{- printf "%s:%s" .repository (toString .tag) -}}
{{- end -}}
{{- end -}}

{{/* Restricted-profile container security context. Call with the UID/GID dict. */}}
{{- define "tai.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .gid }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Restricted-profile pod security context. Call with the UID/GID dict. */}}
{{- define "tai.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .gid }}
fsGroup: {{ .gid }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Redis pod count: masters * (1 + replicasPerMaster). */}}
{{- define "tai.redisPods" -}}
{{- mul (int .Values.redis.masters) (add1 (int .Values.redis.replicasPerMaster)) -}}
{{- end -}}

{{/* Space-separated HOST:PORT of every Redis pod (stable DNS names). */}}
{{- define "tai.redisNodes" -}}
{{- $nodes := list -}}
{{- range $i := until (int (include "tai.redisPods" .)) -}}
{{- $nodes = append $nodes (printf "redis-%d.redis.%s.svc.cluster.local:%d" $i $.Release.Namespace (int $.Values.redis.port)) -}}
{{- end -}}
{{- join " " $nodes -}}
{{- end -}}

{{/* Names of the three gRPC services, sorted (used by NetworkPolicy selectors). */}}
{{- define "tai.serviceNames" -}}
{{- keys .Values.services | sortAlpha | toJson -}}
{{- end -}}

{{/* Data of ConfigMap tai-config (also hashed into the pods so that a change rolls them). */}}
{{- define "tai.configData" -}}
RUST_LOG: {{ .Values.app.logLevel | quote }}
FIRESTORE_DATABASE: {{ .Values.app.firestoreDatabase | quote }}
REDIS_URL: {{ .Values.app.redisUrl | quote }}
VAULT_ADDR: {{ .Values.vault.address | quote }}
TAI_REGION: {{ .Values.region | quote }}
TAI_ENVIRONMENT: {{ .Values.environment | quote }}
GRPC_MAX_CONNECTION_AGE_SECONDS: {{ .Values.app.grpc.maxConnectionAgeSeconds | toString | quote }}
GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS: {{ .Values.app.grpc.maxConnectionAgeGraceSeconds | toString | quote }}
GRPC_KEEPALIVE_TIME_SECONDS: {{ .Values.app.grpc.keepaliveTimeSeconds | toString | quote }}
GRPC_KEEPALIVE_TIMEOUT_SECONDS: {{ .Values.app.grpc.keepaliveTimeoutSeconds | toString | quote }}
METRICS_PORT: {{ .Values.app.metricsPort | toString | quote }}
{{- end -}}

{{/*
checkov skips, each with its reason (checkov reads checkov.io/skip<N> annotations).
*/}}
{{- define "tai.checkovSkipPullPolicy" -}}
CKV_K8S_15=Pinned immutable release tags make IfNotPresent safe, and pod restarts must not depend on the registry being reachable
{{- end -}}

{{/* checkov skips of the service Deployments. */}}
{{- define "tai.checkovSkipsApp" -}}
checkov.io/skip1: {{ include "tai.checkovSkipPullPolicy" . | quote }}
checkov.io/skip2: "CKV_K8S_40=The service images run as their built-in user uid 1000 (app.runAsUser); runAsNonRoot, no privilege escalation and dropped capabilities are enforced"
{{- end -}}

{{/* checkov skips of the Redis StatefulSet. */}}
{{- define "tai.checkovSkipsRedis" -}}
checkov.io/skip1: {{ include "tai.checkovSkipPullPolicy" . | quote }}
checkov.io/skip2: "CKV_K8S_40=The official redis image runs as its redis user (uid 999) and the exporter as uid 59000; both non-root without privilege escalation"
{{- end -}}

{{/* checkov skips of the cluster-forming Job. */}}
{{- define "tai.checkovSkipsJob" -}}
checkov.io/skip1: {{ include "tai.checkovSkipPullPolicy" . | quote }}
checkov.io/skip2: "CKV_K8S_40=The Job runs the redis image as its redis user (uid 999), non-root without privilege escalation"
{{- end -}}

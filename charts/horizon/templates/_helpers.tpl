{{/*
Names are fixed, not prefixed with the release: the gateway's identity
(--gateway-identity), Horizon's own SPIFFE ID (.../sa/horizon) and the
webhook's certificate name (horizon-injector.<namespace>.svc) are part of the
contract. Install the chart once per cluster.
*/}}

{{- define "horizon.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "horizon.labels" -}}
app.kubernetes.io/part-of: horizon
{{- end }}

{{- define "horizon.selector" -}}
app.kubernetes.io/name: horizon
{{- end }}

{{- define "horizon.xdsAddress" -}}
{{ .Values.xdsAddress | default (printf "horizon.%s.svc:15012" .Release.Namespace) }}
{{- end }}

{{- define "horizon.serverID" -}}
{{ .Values.xdsServerID | default (printf "spiffe://%s/ns/%s/sa/horizon" .Values.trustDomain .Release.Namespace) }}
{{- end }}

{{- define "horizon.memberSecretsNamespace" -}}
{{ .Values.controlPlane.memberSecretsNamespace | default .Release.Namespace }}
{{- end }}

{{- /* The namespaces whose WorkloadGroups the control plane reads, a JSON
list (fromJsonArray): controlPlane.workloadGroups.namespaces, or the
release's namespace. */}}
{{- define "horizon.workloadGroupsNamespaces" -}}
{{ .Values.controlPlane.workloadGroups.namespaces | default (list .Release.Namespace) | uniq | toJson }}
{{- end }}

{{- define "horizon.spireSocket" -}}
{{ .Values.ca.spire.socketDir }}/{{ .Values.ca.spire.socketName }}
{{- end }}

{{/* The SPIRE agent's socket directory as a volume named spire-agent-socket. */}}
{{- define "horizon.spireVolume" -}}
- name: spire-agent-socket
{{- if eq .Values.ca.spire.volume "csi" }}
  csi:
    driver: {{ .Values.ca.spire.csiDriver }}
    readOnly: true
{{- else }}
  hostPath:
    path: {{ .Values.ca.spire.hostPath }}
    type: Directory
{{- end }}
{{- end }}


{{/* The injector's webhook path for this cluster. */}}
{{- define "horizon.injectPath" -}}
/inject/{{ .Values.cluster.name }}
{{- end }}

{{/* Rules for the MCS controller's Lease (the writer election). */}}
{{- define "horizon.leaseRules" }}
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [create]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  resourceNames: [horizon-mcs-controller]   # the MCS controller's writer election
  verbs: [get, update]
{{- end }}

{{/*
Checks of values against each other, which the schema cannot express:
templates/validate.yaml runs them, and Helm renders it before the others.
*/}}
{{- define "horizon.validate" -}}
{{- $inj := .Values.injector }}
{{- if and $inj.enabled (not .Values.controlPlane.enabled) (not $inj.url) }}
{{- fail "injector.url: without controlPlane.enabled this cluster has no Service horizon-injector; give the URL at which its apiserver reaches Horizon's injector (or set injector.enabled false)" }}
{{- end }}
{{- if and $inj.enabled (eq .Values.ca.mode "spire") .Values.controlPlane.enabled (not $inj.tlsSecretName) }}
{{- fail "injector.tlsSecretName: with ca.mode spire the injector needs a kubernetes.io/tls Secret for its serving certificate (or set injector.enabled false)" }}
{{- end }}
{{- if and $inj.enabled (not $inj.caBundle) (not (and .Values.controlPlane.enabled (eq .Values.ca.mode "horizon"))) }}
{{- fail "injector.caBundle: the apiserver needs the PEM bundle that signs the injector's certificate; Horizon keeps it current itself only with ca.mode horizon and controlPlane.enabled" }}
{{- end }}
{{- if and $inj.clusters (not (and $inj.enabled .Values.controlPlane.enabled)) }}
{{- fail "injector.clusters: the control plane's injector reads it; set it in the release with controlPlane.enabled and injector.enabled" }}
{{- end }}
{{- if and .Values.gateway.enabled (eq .Values.ca.mode "spire") (eq .Values.gateway.kind "horizon") }}
{{- fail "gateway.kind: horizon reads its SVID from `horizon agent` files, which ca.mode spire does not provide; use gateway.kind envoy with SPIRE" }}
{{- end }}
{{- end }}

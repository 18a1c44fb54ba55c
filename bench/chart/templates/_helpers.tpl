{{- define "eq.labels" -}}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/instance: {{ .name }}-{{ .env }}
app.kubernetes.io/managed-by: helm
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/part-of: {{ .team }}
llmops.io/environment: {{ .env }}
llmops.io/kind: {{ .kind }}
llmops.io/spec: {{ .spec }}
applyset.kubernetes.io/part-of: applyset-llmops-equivalent-v1
{{- range $k, $v := .extra }}
{{ $k }}: {{ $v | quote }}
{{- end }}
{{- end }}

{{- define "eq.namespace" -}}
{{ replace "{team}" .team (index .root.Values.environments .env).namespace }}
{{- end }}

{{- define "eq.modeldir" -}}
/models/{{ .name }}/{{ .model.version }}/{{ toJson .model.files | sha256sum | trunc 12 }}
{{- end }}

{{- define "eq.fetch" -}}
- name: {{ .container }}
  image: {{ .root.Values.llmopsImage }}
  command: [llmops, fetch-model, --dest, {{ include "eq.modeldir" . }}]
  env:
    - {name: LLMOPS_MODEL_URI, value: {{ .model.storageUri | quote }}}
    - {name: LLMOPS_MODEL_FILES, value: {{ toJson .model.files | quote }}}
    - {name: LLMOPS_S3__REGION, value: {{ .cfg.serving.storage.region | quote }}}
  resources:
    requests: {cpu: 500m, memory: 512Mi}
    limits: {memory: 1Gi}
  securityContext:
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    runAsNonRoot: true
    capabilities: {drop: [ALL]}
  volumeMounts:
    - {name: models, mountPath: /models}
    - {name: tmp, mountPath: /tmp}
  envFrom:
    - secretRef: {name: {{ .cfg.serving.storage.secretName }}}
{{- end }}

{{- define "eq.gpu" -}}
nodeSelector:
  {{- toYaml (index .cfg.serving.gpuTypes .resources.gpuType).nodeSelector | nindent 2 }}
tolerations:
  - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}
{{- end }}

{{- define "eq.resources" -}}
{{- range $part := list "requests" "limits" }}
{{ $part }}:
  cpu: {{ $.cpu | quote }}
  memory: {{ $.memory }}
  nvidia.com/gpu: {{ $.gpu | quote }}
{{- end }}
{{- end }}
